"""The data path: rows -> exact chat-template masks -> the tokenized cache -> verl's dataset classes."""
