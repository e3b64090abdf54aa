"""`hitrate kv stats` against a password-protected Redis prints the URL without the
password (issue 11), and still connects with it."""

from __future__ import annotations

import json
import subprocess

from tests.serve_process import hitrate_command


def test_kv_stats_never_prints_the_redis_password(tmp_path, servers):
    redis = servers.redis("--requirepass", "hunter2-secret")
    config = tmp_path / "kv.yaml"
    config.write_text(f"kv: {{remote_url: 'redis://:hunter2-secret@127.0.0.1:{redis.port}/0'}}\n")
    for extra in ([], ["--json"]):
        result = subprocess.run([*hitrate_command(), "kv", "stats", "-c", str(config), *extra],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        out = result.stdout + result.stderr
        assert "hunter2-secret" not in out
        assert f"redis://:***@127.0.0.1:{redis.port}/0" in out
        assert "unavailable" not in out  # it did connect, with the real password
    report = json.loads(result.stdout)
    assert report["tiers"][0]["chunks"] == 0
