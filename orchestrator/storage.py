"""Where a sweep's files live, and how they are written so that a reader never sees a torn file.

A location is a local directory or a pyarrow-supported URI (`s3://bucket/prefix`, `gs://...`). Local writes go
to a temporary file in the same directory, are fsynced, then renamed over the target; object stores replace a
whole object on upload, which gives readers the same guarantee.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

LATER_COLUMN = b"later"
"""Field metadata key of a column added after files were first written; `read_table` fills it with nulls."""


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


class Location:
    """A directory on a local disk or in an object store, addressed by file name."""

    def __init__(self, location: str | Path):
        text = str(location)
        if not text:
            raise ValueError("a storage location must be a directory path or a URI such as s3://bucket/prefix")
        if is_uri(text):
            self.fs, self.root = pafs.FileSystem.from_uri(text)
            self.uri = text.rstrip("/")
            self.local_path: Path | None = None
        else:
            path = Path(text).expanduser().resolve()
            self.fs, self.root = pafs.LocalFileSystem(), str(path)
            self.uri = str(path)
            self.local_path = path

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def child(self, name: str) -> Location:
        """A sub-directory, as a location of its own."""
        return Location(f"{self.uri}/{name}")

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self._path(name)).type != pafs.FileType.NotFound

    def list_names(self) -> list[str]:
        """Names of the entries directly inside this directory (empty if it does not exist)."""
        if self.fs.get_file_info(self.root).type == pafs.FileType.NotFound:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))
        return sorted(Path(i.path).name for i in infos)

    def delete(self) -> None:
        """Remove this directory and everything in it (no error if it does not exist)."""
        if self.fs.get_file_info(self.root).type != pafs.FileType.NotFound:
            self.fs.delete_dir(self.root)

    def makedirs(self) -> None:
        self.fs.create_dir(self.root, recursive=True)

    def read_bytes(self, name: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        if not self.exists(name):
            return None
        with self.fs.open_input_stream(self._path(name)) as f:
            return f.readall()

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace `name` with `data` in one step: a reader sees the old file or the new one, never a part."""
        self.makedirs()
        if self.local_path is None:
            with self.fs.open_output_stream(self._path(name)) as f:
                f.write(data)
            return
        target = self.local_path / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.local_path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.local_path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def write_table(self, name: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        self.write_bytes(name, buf.getvalue())

    def read_table(self, name: str, schema: pa.Schema) -> pa.Table:
        """The Parquet file cast to `schema`; an empty table with that schema when the file does not exist.

        A column whose field metadata marks it as added later (`LATER_COLUMN`) reads as nulls from an older file.
        """
        data = self.read_bytes(name)
        if data is None:
            return schema.empty_table()
        table = pq.read_table(pa.BufferReader(data))
        for f in schema:
            if f.name not in table.column_names and f.metadata and LATER_COLUMN in f.metadata:
                table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
        missing = [f.name for f in schema if f.name not in table.column_names]
        if missing:
            raise ValueError(f"{self.uri}/{name} lacks columns {missing}; expected the schema {schema.names}")
        return table.select(schema.names).cast(schema)
