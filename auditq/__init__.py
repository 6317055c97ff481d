"""auditq: audit whether an unlearned language model stays unlearned after quantization."""

__version__ = "0.1.0"
