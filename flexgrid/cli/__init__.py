"""FlexGrid's command line (Typer)."""
