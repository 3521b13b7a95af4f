"""headway.datasets: LeRobot v3 datasets through lerobot, subtask annotations, resumable collection."""

import logging as _logging

# lerobot warns on every dataset it opens that torchcodec is absent and it decodes with pyav, which is
# the decoder headway chooses (torchcodec needs system FFmpeg libraries; see pyproject.toml)
_logging.getLogger("lerobot.utils.import_utils").setLevel(_logging.ERROR)
