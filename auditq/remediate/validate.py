"""`auditq remediate`'s inputs, checked before any training — first what needs no torch (`validate_inputs`:
the CLI runs it before torch is imported, so a refusal takes well under 2 s), then what needs the heavy
modules (`validate_after_imports`: tensor names against the architecture on the meta device, and KnowMem's
holdout QA, whose probe module imports rouge-score/nltk/scipy: ~4 s).

The light part is the same as `auditq check`'s (auditq.validate.inputs): checkpoint dirs, config.json types,
safetensors headers against config.json, BASE vs --retrain (architecture fields, then the same tensor names,
shapes and dtype kinds: auditq.checkpoint.tensor_match), the suite, --out (never an input, writable now: a probe
file) and every --formats entry (torch-free parsers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditq.errors import InputError


def validate_inputs(opts: Any) -> tuple[Any, Path]:
    """(suite, suite dir) for a RemediateOptions; InputError (exit 2, one line) on the first problem."""
    from auditq.checkpoint.directory import (
        check_compatible_configs,
        check_same_tokenizer,
        validate_checkpoint,
    )
    from auditq.checkpoint.placement_flags import check_device_available
    from auditq.checkpoint.tensor_match import compare_tensors
    from auditq.formats import parse_format
    from auditq.limits import check_context, check_numbers
    from auditq.remediate.output import check_out_dir
    from auditq.report.outdir import check_out_dir as check_writable
    from auditq.suite.records import bundled_suite_dir, load_suite
    from auditq.verdict.waivers import today_utc

    # every hyper-parameter against its range (auditq.limits.LIMITS) first: no NaN/inf lr, no 2**70 seed
    check_numbers({name: getattr(opts, name) for name in (
        "lr", "steps", "percentile", "check_every", "target", "privleak_target", "retain_weight", "batch_size",
        "seed", "threads")})
    if opts.config_file is not None:  # read only after training starts: check now that it is a plain file
        from auditq.regular_file import present

        if not present(opts.config_file, "--config"):
            raise InputError(f"--config {opts.config_file} does not exist")
    check_device_available(getattr(opts.compute, "device", None) or "auto")
    today_utc()  # AUDITQ_TODAY: the re-check's gate clock, parsed before any training
    # files, config.json, tokenizer, headers against config.json (auditq.checkpoint.directory), as in check
    base_config, base_tokenizer = validate_checkpoint(Path(opts.base), "base")
    if opts.retrain is not None:
        retrain_config, retrain_tokenizer = validate_checkpoint(Path(opts.retrain), "retrain")
        check_same_tokenizer(base_tokenizer, retrain_tokenizer, "retrain")
        check_compatible_configs(base_config, retrain_config, "retrain")
        compare_tensors(Path(opts.base), Path(opts.retrain), "retrain", base_config)  # headers only, as in check
    suite_dir = opts.suite or bundled_suite_dir()
    suite = load_suite(suite_dir)
    # the stop rule measures VerbMem/KnowMem with the suite's lengths during training: they must fit BASE's context
    source = "max_position_embeddings" if base_config.get("max_position_embeddings") else "n_positions"
    check_context(suite.settings.prefix_tokens, suite.settings.max_new_tokens, suite.settings.answer_tokens,
                  base_config.get(source), f"{opts.base}/config.json {source}",
                  tuple(f"the suite's [probes] {k}" for k in ("prefix_tokens", "max_new_tokens", "answer_tokens")))
    if opts.out is None and not opts.dry_run:
        raise InputError("--out is required (or pass --dry-run to only print the saliency map and the plan)")
    if opts.out is not None:
        check_out_dir(opts.out, [opts.base, suite_dir, opts.retrain, opts.config_file], opts.force)
        check_writable(str(opts.out), [], force=True)  # writable now, not after training (probe file)
    for raw in opts.formats:  # a bad format is an input error before any training (torch-free parsers)
        parse_format(raw, f"--formats {raw.strip()}")
    from auditq.validate.executor import check_executor

    # the re-check's executor: an unreachable cluster is refused now, not after training
    check_executor(getattr(opts, "executor", "local"), getattr(opts, "ray_address", None))
    return suite, suite_dir


def validate_after_imports(opts: Any, suite: Any) -> None:
    """Tensor names of BASE (and --retrain) against the state dict their config.json builds (transformers),
    and the holdout QA the stop rule and the re-check measure KnowMem's floor with."""
    from auditq.checkpoint.integrity import check_tensor_names
    from auditq.probes.knowmem import KnowMem

    KnowMem().check_suite(suite)

    for role, path in (("base", opts.base), ("retrain", opts.retrain)):
        if path is not None:
            check_tensor_names(Path(path), role, opts.trust_remote_code)
