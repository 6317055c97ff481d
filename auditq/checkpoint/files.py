"""Which files make a checkpoint: the weights auditq reads, the tokenizer files it copies, the pickles it refuses.

A leaf module (no imports): both the light directory checks (auditq.checkpoint.directory) and the loader
(auditq.checkpoint.load) name the same files, and neither has to import the other for it.
"""

WEIGHT_GLOBS = ("*.safetensors",)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
)
#: never unpickled: a checkpoint that has only these is refused with the conversion recipe
PICKLE_GLOBS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
