"""Allow ``python -m canfvc_codec``."""

from canfvc_codec.cli import main

if __name__ == "__main__":
    main()
