# CPU/CUDA image that runs the app on the shipped checkpoints.
# CPU:  docker build -t upd . && docker run -p 8501:8501 upd
# CUDA: docker run --gpus all -p 8501:8501 upd   (the pinned torch wheel is a CUDA build)
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt pyproject.toml README.md ./
COPY upd_core ./upd_core
RUN pip install -r requirements.txt && pip install --no-deps -e .
COPY . .
RUN useradd --create-home upd && chown -R upd /app
USER upd
EXPOSE 8501 7860
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"
CMD ["streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless", "true"]
