"""Data shipped with fastlift: the trained weights of the demo model (``demo_model.npz``)."""
