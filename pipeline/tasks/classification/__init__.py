"""Classification: one label per image (d2l chapters 7-8). The task object is task.py's."""
