FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY quickcart ./quickcart
COPY workers ./workers
COPY bot ./bot
COPY api ./api
COPY sandbox ./sandbox
COPY migrations ./migrations
COPY alembic.ini celeryconfig.py ./
# Editable: alembic.ini and migrations/ are read from the source tree.
RUN pip install --no-cache-dir -e . && useradd --system quickcart
USER quickcart
CMD ["quickcart", "--help"]
