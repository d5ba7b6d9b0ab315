"""The `pdash` commands, one module per topic; `base` holds what they share (see cpchain.wallet.cli)."""
