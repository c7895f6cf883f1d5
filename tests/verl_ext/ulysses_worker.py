"""Run under torchrun (2 processes): logits of the tiny Qwen3 on a packed batch, computed with
Ulysses sp=2 through verl-ext's sdpa path, vs a single-process per-sequence forward.
Writes {"ours": max|diff|, "stock": max|diff|} to argv[2] (stock = transformers' sdpa unpatched)."""
import json
import sys

import torch
import torch.distributed as dist


def main(model_dir: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    import verl_ext.seam.plugin  # noqa: F401  (registers the Ulysses-aware sdpa)
    from transformers import AutoModelForCausalLM
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from verl.utils.ulysses import set_ulysses_sequence_parallel_group

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32).eval()
    lengths = [7, 12, 9]
    ids = [torch.randint(100, 5000, (n,)) for n in lengths]
    input_ids = torch.cat(ids)[None]
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        ref = torch.cat([model(input_ids=x[None], use_cache=False).logits[0] for x in ids])
        total = input_ids.shape[1]
        local = slice(rank * total // world, (rank + 1) * total // world)

        def sp_forward():
            set_ulysses_sequence_parallel_group(dist.group.WORLD)
            try:
                logits = model(input_ids=input_ids[:, local], position_ids=position_ids[:, local], use_cache=False).logits[0]
            finally:
                set_ulysses_sequence_parallel_group(None)
            parts = [torch.empty_like(logits) for _ in range(world)]
            dist.all_gather(parts, logits.contiguous())
            return torch.cat(parts)

        ours = (sp_forward() - ref).abs().max().item()
        patched = ALL_ATTENTION_FUNCTIONS["sdpa"]
        ALL_ATTENTION_FUNCTIONS["sdpa"] = patched.stock
        stock = (sp_forward() - ref).abs().max().item()
        ALL_ATTENTION_FUNCTIONS["sdpa"] = patched
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"ours": ours, "stock": stock, "scale": ref.abs().max().item()}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
