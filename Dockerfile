FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY quickcart ./quickcart
COPY workers ./workers
COPY bot ./bot
COPY api ./api
COPY sandbox ./sandbox
COPY migrations ./migrations
COPY alembic.ini celeryconfig.py ./
# Editable: alembic.ini and migrations/ are read from the source tree. The install compiles
# the message catalogs (setup.py); the test fails the build if it did not.
RUN pip install --no-cache-dir -e . \
    && test -f quickcart/locale/id/LC_MESSAGES/messages.mo \
    && useradd --system quickcart
USER quickcart
CMD ["quickcart", "--help"]
