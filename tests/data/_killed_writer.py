"""Child process for the kill test: starts a TableWriter, flushes row groups, never closes.

Usage: python _killed_writer.py URL MODE   (MODE: "kill" waits to be SIGKILLed, "exit"
calls os._exit(1) itself). Prints the temporary file's path once row groups are on disk.
"""

from __future__ import annotations

import os
import sys
import time

from segloop.data.parquet import TableWriter
from segloop.data.schemas import MANIFEST


def main(url: str, mode: str) -> None:
    writer = TableWriter(url, MANIFEST, row_group_bytes=2048)
    for i in range(400):
        writer.write_rows(
            [
                {
                    "image_id": f"{i:016x}",
                    "name": f"img_{i}",
                    "split": "train",
                    "source": "real",
                    "image_uri": f"images/img_{i}.png",
                    "height": 8,
                    "width": 8,
                    "n_bytes": 100,
                }
            ]
        )
    print(writer.tmp_path, flush=True)
    if mode == "exit":
        os._exit(1)
    time.sleep(60)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
