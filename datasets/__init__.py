"""headway.datasets: LeRobot v3 datasets through lerobot, subtask annotations, resumable collection."""

if __name__ == "datasets":
    raise ImportError(
        "this is headway's datasets folder, imported here under the bare name 'datasets', which would hide "
        "Hugging Face's `datasets` library that lerobot needs. The repository root is on sys.path: import it "
        "as `headway.datasets` and run tools from outside the root (the `headway` command, `uv run pytest`), "
        "not `python -c`/`python -m` from the repository root."
    )

import logging as _logging

# lerobot warns on every dataset it opens that torchcodec is absent and it decodes with pyav, which is
# the decoder headway chooses (torchcodec needs system FFmpeg libraries; see pyproject.toml)
_logging.getLogger("lerobot.utils.import_utils").setLevel(_logging.ERROR)
