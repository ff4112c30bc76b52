"""The AWS functions that join features: composition roots, as ``services/local/app.py`` is for
``callvault serve``. Features never import each other; these modules wire them together."""
