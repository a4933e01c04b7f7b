"""The shop: carts kept per customer on the node that owns the customer, and payments."""
