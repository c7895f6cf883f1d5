import json

import pytest

from data_converters import textcraft_traj as tc
from data_converters.parquet_io import Reject
from data_converters.pipeline import Kept


def _traj(n="1"):
    return {"item_id": f"textcraft_{n}", "conversations": [
        {"from": "human", "loss": None, "value": "You are given a few useful crafting recipes...\nGoal: craft oak planks."},
        {"from": "gpt", "loss": False, "value": "OK. I'll follow your instructions."},
        {"from": "human", "loss": None, "value": "Crafting commands:\ncraft 4 oak planks using 1 oak log\n\nGoal: craft oak planks."},
        {"from": "gpt", "loss": True, "value": "Thought:\nI need an oak log.\n\nAction:\nget 1 oak log"},
        {"from": "human", "loss": None, "value": "Got 1 oak log"},
        {"from": "gpt", "loss": None, "value": "Thought:\nNow craft.\n\nAction:\ncraft 4 oak planks using 1 oak log"},
    ]}


def test_agentgym_trajectory_maps_roles_and_loss():
    out = tc.convert_record(_traj(), tc.Options())
    assert isinstance(out, Kept)
    msgs = out.row["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert [m["loss"] for m in msgs] == [None, False, None, True, None, None]
    assert msgs[4]["content"] == "Got 1 oak log" and out.row["item_id"] == "textcraft_1"


def test_system_prompt_prepended_or_kept():
    out = tc.convert_record(_traj(), tc.Options(system_prompt="You play TextCraft."))
    assert out.row["messages"][0] == {"role": "system", "content": "You play TextCraft.", "loss": None}
    own = {"messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "u"},
                        {"role": "assistant", "content": "a"}]}
    out = tc.convert_record(own, tc.Options(system_prompt="other"))
    assert [m["content"] for m in out.row["messages"]] == ["mine", "u", "a"]
    assert set(out.notes) == {"own_system_prompt_kept", "no_item_id"}


def test_openai_messages_with_tool_turns():
    rec = {"id": 7, "messages": [{"role": "user", "content": "go"},
                                 {"role": "assistant", "content": "calling", "loss": True},
                                 {"role": "tool", "content": "Inventory: [oak planks] (4) "},
                                 {"role": "tool", "content": "more"},
                                 {"role": "assistant", "content": "done"}]}
    out = tc.convert_record(rec, tc.Options())
    assert out.row["item_id"] == "7" and out.row["messages"][2]["content"] == "Inventory: [oak planks] (4) "


def _with(turns):
    return {"item_id": "x", "conversations": turns}


H, G = {"from": "human", "value": "h"}, {"from": "gpt", "value": "g"}


@pytest.mark.parametrize("record,reason", [
    ("nope", "not_an_object"),
    ({"item_id": "x"}, "missing_field:conversations"),
    ({"conversations": "h"}, "wrong_type:conversations"),
    (_with([]), "empty_conversation"),
    (_with([H, "g"]), "wrong_type:message"),
    (_with([H, {"from": "bot", "value": "g"}]), "unknown_role"),
    (_with([H, {"from": "gpt", "value": 3}]), "wrong_type:content"),
    (_with([H, {"from": "gpt", "loss": True}]), "missing_field:value"),  # ShareGPT turn without its text
    (_with([H, {"from": "gpt", "value": None}]), "missing_field:value"),
    ({"messages": [{"role": "user", "content": "u"}, {"role": "assistant"}]}, "missing_field:content"),
    (_with([H, {"from": "gpt", "value": "  "}]), "empty_text:content"),
    (_with([H, {"from": "gpt", "value": "g", "loss": "yes"}]), "wrong_type:loss"),
    (_with([G, H, G]), "roles_out_of_order"),
    (_with([H, G, G]), "roles_out_of_order"),
    (_with([H, H, G]), "roles_out_of_order"),
    (_with([H, G, {"from": "system", "value": "s"}, G]), "roles_out_of_order"),
    (_with([H, {"from": "tool", "value": "t"}, G]), "roles_out_of_order"),
    (_with([H, G, H]), "last_turn_not_assistant"),
    (_with([H, {"from": "gpt", "value": "g", "loss": False}]), "nothing_to_train"),
])
def test_reject_reasons(record, reason):
    out = tc.convert_record(record, tc.Options())
    assert isinstance(out, Reject) and out.reason == reason, out


def test_cli_json_list_to_parquet(tmp_path, read_rows, read_jsonl):
    src = tmp_path / "textcraft_train.json"
    src.write_text(json.dumps([_traj("1"), _with([H, G, H]), _traj("3")]))
    out = tmp_path / "o"
    assert tc.main([str(src), "--out", str(out), "--system-prompt", "sys", "--no-progress"]) == 0
    rows = read_rows(out / "train.parquet")
    assert [r["item_id"] for r in rows] == ["textcraft_1", "textcraft_3"]
    assert rows[0]["messages"][0]["role"] == "system" and rows[0]["messages"][2]["loss"] is False
    assert rows[0]["data_source"] == "textcraft"
    [rej] = read_jsonl(out / "rejects.jsonl")
    assert (rej["row"], rej["reason"]) == (1, "last_turn_not_assistant")
