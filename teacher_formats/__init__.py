"""
The weight formats a teacher can come in, one module each, every one turning its files into model.py's GPT:
checkpoint.py (this repo's and nanoGPT's .pt), gguf.py (SmolLM2's GGUF: weights and embedded tokenizer),
hf.py with hf_families.py (Hugging Face folders) and hub.py (hub downloads). teacher.py picks one per spec.

Nothing is imported here: data/tokenizer.py reads through gguf.py and hub.py, which must stay free of torch.
"""
