"""Training: building blocks (data loading, augmentation, losses, schedules, logging) and the trainer."""
