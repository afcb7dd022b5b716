"""What the tiny default uses to make its own base and data: synthetic conversations and exams,
pretraining."""
