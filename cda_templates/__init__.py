"""CDA document templates (XML data files) filled by gateway.documents.build.

A package only so that the templates install with the gateway and are found with
importlib.resources, from a source checkout and from an installed wheel alike.
"""
