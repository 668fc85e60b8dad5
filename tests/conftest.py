"""Shared test settings.

The runner's fixture notebooks are executed by tests/test_course.py through papermill; nbval must not collect them
as notebooks of their own (`make test` passes --nbval-lax for the course notebooks).
"""

import os

collect_ignore_glob = ["course_fixtures/*"]

# Figures made by tests never replace the published ones in figures/.
os.environ.setdefault("S2S_FIGURES_DIR", os.path.join(os.path.dirname(__file__), "..", "build", "test-figures"))
