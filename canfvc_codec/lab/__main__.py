"""``python -m canfvc_codec.lab``: the list of harnesses, one command each."""

from canfvc_codec.lab import HARNESSES

WIDTH = max(len(name) for name, _ in HARNESSES)

print("canfvc lab harnesses (each takes -h):")
for name, what in HARNESSES:
    print(f"  python -m canfvc_codec.lab.{name:<{WIDTH}} {what}")
