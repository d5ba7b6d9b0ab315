"""The market service (Django + DRF): accounts, products, reviews, user data, curated content,
chain records and the proxy registry, with search in the database or Elasticsearch.

Owns the market's database and HTTP API; must not hold user keys or sign anything on a
user's behalf (every identity comes from a signature the client made), and must not talk to
proxies. Chain state reaches it only through the indexer (`records`), never from a request.
"""
