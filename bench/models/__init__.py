"""Pure-PyTorch StyleGAN2 generator, e4e encoder and IR-SE50 backbone, with checkpoint readers."""
