"""gpu_check.sh's install record: which carried wheels installed, which engines import (JSON on stdout).

    python bench/gpu_check_imports.py INSTALL_TSV SITE     (INSTALL_S in the environment: the install's seconds)
"""

import importlib
import json
import os
import sys

MODULES = ("rouge_score", "nltk", "platformdirs", "bitsandbytes", "pcre", "gptqmodel", "llama_cpp", "auditq.cli.app")
GGUF_OFFLOAD = ("not checked: no CUDA build of llama-cpp-python available (the registry has no CUDA wheel; "
                "it cannot be compiled with CUDA within the device limits)")


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        wheels = dict(line.rstrip("\n").split("\t", 1) for line in handle if "\t" in line)
    imports = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            imports[name] = ("ok " + str(getattr(module, "__version__", ""))).strip()
        except BaseException as exc:  # noqa: BLE001 - record why, whatever it is (SystemExit included)
            first = (str(exc).splitlines() or [""])[0][:300]
            imports[name] = f"failed: {type(exc).__name__}: {first}"
    failed = [w for w, status in wheels.items() if status != "ok"]
    print(json.dumps({"status": "failed" if failed else "ok", "seconds": int(os.environ.get("INSTALL_S", "0")),
                      "site": sys.argv[2], "wheels": wheels, "wheels_failed": failed, "imports": imports,
                      "gguf_offload": GGUF_OFFLOAD}))


if __name__ == "__main__":
    main()
