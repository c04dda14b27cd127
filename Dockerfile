# syntax=docker/dockerfile:1
# Build stage: a wheel of the project and its dependencies, built once.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md alembic.ini ./
COPY bot ./bot
COPY handlers ./handlers
COPY migrations ./migrations
COPY slack ./slack
RUN pip install --upgrade pip && pip install .

# Runtime stage: only the virtualenv, the migrations and the Slack manifest; non-root.
FROM python:3.11-slim AS runtime
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/migrations /app/migrations
COPY --from=build /src/alembic.ini /app/alembic.ini
COPY --from=build /src/slack /app/slack
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    IMAGEPULL_LOG_JSON=true IMAGEPULL_DATABASE_URL=sqlite+aiosqlite:////tmp/imagepull-doctor.db
USER 10001:10001
EXPOSE 3000 9090
ENTRYPOINT ["imagepull-doctor"]
CMD ["run"]
