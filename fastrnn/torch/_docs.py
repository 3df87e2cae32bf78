"""Docstring fragments shared by the sequence modules and the cells."""

FACTORY_AND_BACKEND = """device, dtype : optional
        torch's factory arguments for the parameters.
    backend : str, optional, keyword only
        fastrnn backend ("numba", "numpy", "cupy"); None means the best one for the tensors' device."""
