"""Import of the public Ali-CCP dataset (the ESMM paper's data) into the ``samples`` layout."""
