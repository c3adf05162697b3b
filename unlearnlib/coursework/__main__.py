"""``python -m unlearnlib.coursework [timings] [copies]``: measure this CPU's training throughput for the time
predictions (``coursework/timings.json``), and write the committed student copies (``coursework/student/``) and the
exercise tables of the teachers' page (``chapters/teachers.md``)."""
from __future__ import annotations

import argparse
import platform
import sys


def main(argv: list[str] | None = None) -> int:
    from .. import _io
    from .release import STUDENT_DIR, TIMINGS_FILE, coursework_chapters

    parser = argparse.ArgumentParser(prog="python -m unlearnlib.coursework", description=__doc__)
    parser.add_argument("what", nargs="*", choices=["timings", "copies"], default=["copies"])
    args = parser.parse_args(argv)
    if "timings" in args.what:
        import os

        import torch

        from ..bench import bench_models, measure_throughput

        spec = bench_models()["small-cnn"]
        tp = measure_throughput(spec, device="cpu")
        _io.atomic_write_json(TIMINGS_FILE, {
            "what": "training throughput of the cpu profile's model on this CPU; exercise times on a T4 are "
                    "predicted as the measured CPU time x this / the T4's assumed throughput (unlearnlib.bench)",
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "train_images_per_s": {"small-cnn": round(tp.train, 1)}})
        print(f"{TIMINGS_FILE}: small-cnn trains at {tp.train:.0f} images/s here")
    if "copies" in args.what:
        import nbformat

        from .release import TEACHERS_PAGE, source_notebook, student_notebook, update_teachers_page

        for name in coursework_chapters():
            student = student_notebook(source_notebook(name))
            _io.atomic_write(STUDENT_DIR / f"{name}.ipynb", lambda f: nbformat.write(student, f), mode="w")
            print(STUDENT_DIR / f"{name}.ipynb")
        if update_teachers_page():
            print(f"{TEACHERS_PAGE}: exercise table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
