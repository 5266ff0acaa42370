"""The README's first set-up command, `lambkin run --with-example`: the host defines the Python
function `hello` and prints how to call it, and the commands it prints work as printed: the
host's own CLI (`lambkin invoke ... --log-tail`), and the AWS CLI in a shell that ran
`eval "$(lambkin credentials)"`, which signs with the host's key and finds the host by itself.
Run in the host root's parent directory, as a newcomer would, on a root of its own."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

from conftest import Host, _all_pids, _kill_tree, _proc_stat
from support import VENV, until


def test_the_example_host_answers_the_commands_it_prints(lambkin_bin, device_dir):
    tmp_path = device_dir("readme")
    root = tmp_path / "lambkin-root"
    out_path = tmp_path / "host.stdout"
    err_path = tmp_path / "host.stderr"
    siblings = frozenset(p for p in _all_pids() if (_proc_stat(p) or (0,))[0] == os.getpid())
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [str(lambkin_bin), "run", "--with-example", "--root", str(root),
             "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp_path,
            start_new_session=True,
        )
    host = Host(root, proc, "", out_path, err_path, siblings)
    output = host.output
    try:
        until(lambda: "example function `hello` is ready" in out_path.read_text(errors="replace"),
              "the example's banner", output, timeout=120)
        printed = out_path.read_text()

        # The CLI command it prints, as printed (the binary under test for `lambkin`).
        (invoke_line,) = [l.strip() for l in printed.splitlines()
                          if l.strip().startswith("lambkin invoke hello ")]
        args = shlex.split(invoke_line)
        assert args[-2:] == ["--root", str(root)], invoke_line
        cli = subprocess.run([str(lambkin_bin), *args[1:], "--log-tail"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert json.loads(cli.stdout) == {"message": "Hello, edge!", "function": "hello"}, cli.stdout
        assert "saying hello to edge" in cli.stderr, cli.stderr
        assert "REPORT RequestId:" in cli.stderr, cli.stderr

        # The AWS CLI after the `eval` it prints, in a shell, nothing else set for it.
        (eval_line,) = [l.strip() for l in printed.splitlines()
                        if l.strip().startswith('eval "$(lambkin credentials')]
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "lambkin").symlink_to(lambkin_bin)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
                    "AWS_PAGER": "", "AWS_MAX_ATTEMPTS": "1",
                    "PATH": f"{bin_dir}:{VENV / 'bin'}:{env.get('PATH', '')}"})
        script = (f"set -e; {eval_line}; "
                  "aws lambda invoke --function-name hello "
                  "--payload '{\"name\":\"shell\"}' out.json >/dev/null; cat out.json")
        aws = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert aws.returncode == 0, aws.stdout + aws.stderr
        assert json.loads(aws.stdout) == {"message": "Hello, shell!", "function": "hello"}, aws.stdout
    except BaseException:
        print(host.output())
        _kill_tree(proc)
        raise
    # And it stops as a host must: status 0 on SIGTERM, nothing of it left running.
    host.stop()
