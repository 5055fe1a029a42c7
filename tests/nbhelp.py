"""Executing notebooks in a real kernel (nbclient), as the notebook tests do."""

import nbclient
import nbformat


def execute_book(book: nbformat.NotebookNode, workdir) -> nbformat.NotebookNode:
    """Run every cell of ``book`` in a new python3 kernel whose working directory is
    ``workdir``; widget state is saved in the notebook's metadata. Returns ``book``."""
    client = nbclient.NotebookClient(
        book,
        kernel_name="python3",
        timeout=120,
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return book
