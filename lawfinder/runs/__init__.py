"""A whole run: the pipeline (`pipeline`), its folder (`folder`), what it records for
reproduction (`metadata`), its results as objects (`results`) and its reports."""
