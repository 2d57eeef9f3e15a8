"""``python -m dicomflow.queue URL [--name NAME] [--burst]``: run a queue worker."""

from dicomflow.queue.worker import main

main()
