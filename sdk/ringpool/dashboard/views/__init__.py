"""The pages, one module per section; each exports its ``routes``."""
