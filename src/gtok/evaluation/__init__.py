"""What a trained model learned (torch layer): its embeddings of held-out records scored against LSI."""
