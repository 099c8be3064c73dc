"""Development tools (they need the dev extra): the HTML export of the notebooks."""
