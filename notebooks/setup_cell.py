# Setup: install cifarlib only where it is missing. In Colab it comes from GitHub with --no-deps, so Colab's
# own TensorFlow, Keras and NumPy are never replaced; in a checkout the repository itself is used.
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("cifarlib") is None:
    if "google.colab" in sys.modules:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "GPUtil", "humanize", "papermill"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "git+https://github.com/cifarlib/cifarlib"], check=True)
    elif (Path.cwd().parent / "cifarlib").is_dir():
        sys.path.insert(0, str(Path.cwd().parent))
    else:
        raise ModuleNotFoundError("cifarlib is not installed: run `make install` in the repository")
