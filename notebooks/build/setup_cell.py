# Setup: where cifarlib is missing (Colab), install it and what it needs, keeping the runtime's own TensorFlow,
# Keras and NumPy (pinned as pip constraints); in a checkout, use the repository itself.
import importlib.util, os, subprocess, sys  # noqa: E401 (one line: the setup cell stays short)
from importlib.metadata import distributions

if importlib.util.find_spec("cifarlib") is None and os.path.isdir("../cifarlib"):
    sys.path.insert(0, os.path.abspath(".."))
elif importlib.util.find_spec("cifarlib") is None:
    pins = "".join(
        f"{d.name}=={d.version}\n" for d in distributions() if d.name in {"tensorflow", "keras", "numpy"}
    )
    source = os.environ.get("CIFARLIB_SETUP_SOURCE", "cifarlib @ git+{repository}")  # tests: a built wheel
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--constraint", "/dev/stdin", source]
    subprocess.run(pip, input=pins, text=True, check=True)
