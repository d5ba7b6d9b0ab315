"""Curated front-page content: carousel, promotions and hot tags (admin writes only), plus
hot tags computed from what is actually listed."""
