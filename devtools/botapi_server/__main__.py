"""``python -m devtools.botapi_server``: serve until Ctrl-C, or measure throughput."""

from devtools.botapi_server.cli import main

if __name__ == "__main__":
    main()
