"""Building blocks of the forward pass, one file each."""
