"""Suite configuration: YAML loading, the component catalog, validation, paper-vs-code choices.

May import schema and the components; never the engine, the run layer, W&B or the CLI.
"""
