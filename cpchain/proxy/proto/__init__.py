"""Generated protobuf code of the proxy control channel.

Source: trade.proto; regenerate with scripts/proxy/gen_proto.py (a test checks it is current).
"""
