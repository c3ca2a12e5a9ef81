"""Plumbing every stage shares, free of torch and ngspice: atomic file output and the CLI convention."""
