"""One router per resource: ``calls`` (the search API), ``files`` (local signed downloads), ``health``."""
