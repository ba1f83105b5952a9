"""One SQL store (SQLAlchemy Core on SQLite or PostgreSQL): the schema, Alembic
migrations, the repositories for ``sessions`` and ``consults``, and the audit chain.

Modules
-------
``engine``      the process's engine: SQLite in the data dir (WAL, synchronous=FULL,
                foreign keys, 0700/0600) or PostgreSQL through psycopg 3; ``health``.
``schema``      every table in one ``MetaData``.
``migrate``     ``upgrade(engine)``: the migrations in ``migrations/versions``, run from
                code; ``python -m store.migrate revision -m ...`` writes a new one.
``audit``       the append-only hash chain: canonical form, ``append``, ``verify``,
                ``query``.
``sessions``    ``SqlSessionStore``: the signaling server's ``sessions.store.Store``.
``directory``   ``SqlDirectoryRepository``: institutions, departments, people, devices,
                service relations.
``accounts``    ``SqlCredentialRepository``, ``SqlSessionRepository`` (login sessions,
                API tokens), ``SqlAuditSink``.
``streams``     ``SqlStreamRepository``: ECG stream metadata.
``secrets``     ``SecretBox``: TOTP secrets sealed at rest.
``stores``      ``open_store(data_dir=..., database_url=...)``: all of the above on one
                engine, schema at head.

Every repository method is synchronous and one transaction: call them from a worker
thread, never on the event loop. Importing this package imports nothing heavy (no
numpy), so the command-line tools that use it start fast.
"""
