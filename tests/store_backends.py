"""Store URLs for tests on every backend: a local directory, memory:// and s3://.

S3 is moto's server on 127.0.0.1, one per test process, started on first use. The AWS variables
are set before boto is imported anywhere (fake credentials; no instance-metadata probe), and
``AWS_ENDPOINT_URL`` points boto, s3fs and the ``scar`` CLI at the local server: no traffic
leaves 127.0.0.0/8.
"""

from __future__ import annotations

import atexit
import logging
import os
import uuid

import pytest

os.environ.update(
    AWS_ACCESS_KEY_ID="x",
    AWS_SECRET_ACCESS_KEY="x",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)

BUCKET = "scar-test"
BACKENDS = ("local", "memory", "s3")
_server: list = []


def s3_endpoint() -> str:
    if not _server:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from moto.server import ThreadedMotoServer

        srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        srv.start()
        host, port = srv.get_host_and_port()
        assert host.startswith("127."), host
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        import s3fs

        s3fs.S3FileSystem(use_listings_cache=False).mkdir(BUCKET)
        atexit.register(srv.stop)
        _server.append(srv)
    return os.environ["AWS_ENDPOINT_URL"]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 for the whole test session."""
    return s3_endpoint()


def new_url(kind: str, tmp_path) -> str:
    name = uuid.uuid4().hex[:12]
    if kind == "local":
        return str(tmp_path / f"store-{name}")
    if kind == "memory":
        return f"memory://scar-test/{name}"
    s3_endpoint()
    return f"s3://{BUCKET}/{name}"
