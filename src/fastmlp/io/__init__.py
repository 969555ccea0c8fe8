"""Reading what users hand us: models rebuilt from files (every field checked before
anything is sized from it) and ``.npy``/``.npz``/stream readers bounded by the bytes
present. The file format itself is :mod:`fastmlp.serialization`'s."""
