"""A streaming neural audio codec built from scratch (DAC/SEANet-style encoder/decoder with residual VQ)."""
